set -u
echo "${MISSING:-defaults are fine}"
echo "before"
echo "$MISSING"
echo "never printed"
