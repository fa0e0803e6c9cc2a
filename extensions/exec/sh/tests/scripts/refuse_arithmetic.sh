N=1
echo $((N + 1))
