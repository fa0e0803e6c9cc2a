echo ok
echo "unterminated
echo more
