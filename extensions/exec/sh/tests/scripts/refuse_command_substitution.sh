echo "nothing runs when the script has a refused construct"
mkdir should-not-exist
VERSION=$(cat README.md)
