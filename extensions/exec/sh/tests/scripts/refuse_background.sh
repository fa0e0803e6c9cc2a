echo start
sleep 10 &
