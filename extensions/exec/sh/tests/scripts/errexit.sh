echo "errexit is on by default"
mkdir out
ls missing-dir
echo "never printed"
