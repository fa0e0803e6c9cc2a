mkdir -p out
echo first > out/log.txt
echo second >> out/log.txt
cat < out/log.txt
cat missing.txt 2> out/err.txt || echo "stderr went to a file"
cat out/err.txt
cat missing.txt > out/both.txt 2>&1 || true
cat out/both.txt
echo "to stderr" >&2
echo "discarded" > /dev/null
cat missing.txt 2>/dev/null || echo "error discarded"
echo "explicit stdout" > /dev/stdout
: > out/empty.txt
wc -c < out/empty.txt
echo "into a missing directory" > nope/file.txt
