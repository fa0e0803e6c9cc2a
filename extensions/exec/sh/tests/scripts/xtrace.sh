set -x
NAME=value
echo "$NAME" > out.txt
set +x
echo "not traced"
