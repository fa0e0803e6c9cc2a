cat data/names.txt | sort -u
sort -n data/numbers.txt | head -n 2
grep -v alice data/names.txt | wc -l
echo "b a c" | grep -c b
# Each command of a multi-command pipeline runs like a subshell.
echo x | VAR_SET_IN_PIPELINE=1
echo "[${VAR_SET_IN_PIPELINE-not set}]"
true | exit 3 | echo "exit ends only its stage"
false | true
echo "without pipefail: $?"
set -o pipefail
set +e
false | true
echo "with pipefail: $?"
