echo "building"
cargo build --release
echo "never printed"
