grep alice data/names.txt
grep -n -i ALICE data/names.txt
grep -c alice data/names.txt
grep -v -e alice -e bob data/names.txt
grep '^[ab]' data/names.txt
grep 'o.$' data/names.txt
grep -x bob data/names.txt
grep -F '(a: i32' src/lib.rs
grep 'a + b' src/*.rs
grep -l fn src/main.rs src/lib.rs README.md
grep -q carol data/names.txt && echo "quiet match"
set +e
grep zed data/names.txt
echo "no match: $?"
grep 'a\(b\)' data/names.txt
echo "unsupported pattern: $?"
grep -E 'a|b' data/names.txt
echo "no -E: $?"
