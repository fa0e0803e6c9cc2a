echo start
while true; do
  echo forever
done
