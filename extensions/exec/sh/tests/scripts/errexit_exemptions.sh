false || echo "left of || is exempt"
false && echo "not printed"
echo "left of && is exempt"
! true
echo "! is exempt"
if false; then echo no; else echo "if conditions are exempt"; fi
set +e
false
echo "set +e: continued after status $?"
set -e
grep -q nothing-like-this data/names.txt || echo "grep found nothing: $?"
true && false
echo "never printed: the last command of && failed"
