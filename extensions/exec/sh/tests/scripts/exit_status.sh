set +e
cat missing.txt
echo "cat failed with $?"
exit 42
echo "never printed"
