set +e
cat /etc/passwd
cat ../../etc/passwd
echo leak > /tmp/leak.txt
echo leak > ../leak.txt
cp README.md /tmp/
mkdir /tmp/x
rm -rf /
rm -rf ..
ls /
touch src/../../escape
[ -f /etc/passwd ]
echo "test status $?"
pwd
