wc -l data/names.txt
wc data/names.txt data/numbers.txt
wc -c < README.md
head -n 2 data/names.txt
head -1 data/numbers.txt
tail -n 1 data/names.txt
tail -n +3 data/numbers.txt
head -n 1 data/names.txt data/numbers.txt
sort -r data/names.txt
sort -n data/numbers.txt
sort -nr data/numbers.txt
basename /workspace/src/main.rs .rs
basename dist/
dirname src/main.rs
dirname main.rs
dirname /workspace/src/
sha256sum README.md
echo "hello from labhit" | tee copy.txt | sha256sum
cat copy.txt
