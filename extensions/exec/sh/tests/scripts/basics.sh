# Comments, separators, && / || / !, $?, continuation lines.
echo hello; echo world   # trailing comment
true && echo "and runs"
false || echo "or runs after status $?"
! false && echo "negated"
: no-op
echo one \
  two \
  three
echo "status is $?"
