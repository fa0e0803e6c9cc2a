mkdir -p dist
echo one > dist/a.txt
echo two > dist/b.txt
for f in dist/*.txt; do
  echo "file $f"
done > list.txt
cat list.txt
if [ -f list.txt ]; then
  echo "found" >&2
  echo "kept"
fi 2> err.txt >> list.txt
cat list.txt err.txt
for w in x y; do cat; done <<EOF2
from the here-document
EOF2
for f in dist/*.txt; do echo "$f"; done | wc -l
if true; then echo no; fi > missing/dir.txt
echo "after the failed redirection"
