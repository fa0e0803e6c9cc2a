echo src/*.rs
echo */
echo data/[n]*.txt data/?ames.txt
echo *.none "*.rs" 'src/*'
echo .*
echo /workspace/src/m*
for f in data/*; do wc -l "$f"; done
PATTERN='src/l*'
echo $PATTERN "$PATTERN"
echo [[:upper:]]*
