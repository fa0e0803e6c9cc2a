echo 'single $GREETING "quotes" \n'
echo "double $GREETING 'quotes' \$ \" \\ \` \n"
echo unquoted\ with\ escapes \$GREETING
echo "" '' x
echo "a"'b'c"$CI"
echo {a,b} 'brace expansion is not sh'
echo a$ "$" '$'
echo "multi
line"
