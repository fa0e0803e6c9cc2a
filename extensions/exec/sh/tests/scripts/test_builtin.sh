[ -f README.md ] && echo "README.md is a file"
[ -d src ] && echo "src is a directory"
[ -e missing ] || echo "missing does not exist"
test -s README.md && echo "README.md is not empty"
[ -z "" ] && [ -n "x" ] && echo "-z and -n"
[ abc = abc ] && [ abc != abd ] && echo "string comparisons"
[ 10 -gt 9 ] && [ 2 -le 2 ] && [ -3 -lt 0 ] && [ 1 -ne 2 ] && [ 5 -ge 5 ] && [ 4 -eq 4 ] && echo "integers"
[ ! -d README.md ] && echo "negation"
[ -f README.md -a -d src ] && [ -f nope -o -d src ] && echo "-a and -o"
[ \( -f README.md \) ] && echo "parentheses"
[ "$UNSET" ] || echo "empty string is false"
test && echo never || echo "no arguments is false"
set +e
[ 1 -eq one ]
echo "bad integer: $?"
[ a == a ]
echo "== is refused: $?"
[ -x README.md ]
echo "unsupported: $?"
[ -f README.md
echo "missing ]: $?"
