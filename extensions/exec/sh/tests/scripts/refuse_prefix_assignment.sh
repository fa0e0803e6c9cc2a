echo start
RUSTFLAGS=-Dwarnings cargo build
