echo start
echo "today is `date`"
