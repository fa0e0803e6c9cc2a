echo start
{ echo a; echo b; } > out.txt
