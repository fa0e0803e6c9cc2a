if [ -f README.md ]; then
  echo yes
