cat <<EOF > out.txt
Hello $GREETING
literal \$GREETING, backslash \\ and \`
EOF
cat out.txt
cat <<'RAW'
no $EXPANSION here \n
RAW
	cat <<-TABS
	leading tabs stripped
		all of them
	TABS
grep -c line <<EOF
line 1
line 2
other
EOF
cat <<A; cat <<B
from A
A
from B
B
