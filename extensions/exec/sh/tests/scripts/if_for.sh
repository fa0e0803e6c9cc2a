for f in src/*.rs; do
  if [ "$f" = src/main.rs ]; then
    echo "$f is the binary"
  elif grep -q 'pub fn' "$f"; then
    echo "$f is the library"
  else
    echo "$f is something else"
  fi
done
for word in one 'two words' three; do printf '[%s]' "$word"; done; echo
for n in; do echo never; done
echo "loop variable keeps the last value: $word"
for dir in a b; do
  mkdir -p "out/$dir"
  for file in x y; do
    echo "$dir/$file" > "out/$dir/$file.txt"
  done
done
ls out/a out/b
