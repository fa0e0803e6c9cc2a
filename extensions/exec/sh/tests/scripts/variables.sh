echo "granted: CI=$CI GREETING=${GREETING}"
NAME=world
echo "hello ${NAME}!" $NAME
EMPTY=
echo "default: ${UNSET:-fallback} ${EMPTY:-empty-fallback} [${EMPTY-kept-empty}] ${UNSET-unset-fallback}"
echo "alternative: [${NAME:+set}] [${UNSET+set}] [${EMPTY+set-but-empty}] [${EMPTY:+nonempty}]"
echo "nested: ${UNSET:-${NAME:-no}}"
# No field splitting: one argument even with spaces.
SPACED="a   b"
printf '<%s>\n' $SPACED
# An empty unquoted expansion disappears; a quoted one stays.
printf '<%s>\n' $UNSET "$UNSET" end
unset NAME
echo "after unset: [${NAME-gone}]"
export LATER
echo "exported but unset: [${LATER-unset}]"
export LATER=now BUILD=1
export | grep -F -e LATER -e BUILD
