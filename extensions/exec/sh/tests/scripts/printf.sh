printf 'plain\n'
printf '%s=%s\n' a 1 b 2 c
printf '[%5s][%-5s][%05d][%+d][%x][%X][%o][%c]\n' ab cd 42 7 255 255 8 xyz
printf '%d%%\n' 50
printf '%b\n' 'tab:\there' 'stop\c ignored'
printf 'no newline'
printf '\n%s\n' "$GREETING"
set +e
printf '%d\n' abc
printf '%f\n' 1.5
echo "status $?"
