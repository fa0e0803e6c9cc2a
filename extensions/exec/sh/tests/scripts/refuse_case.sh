case "$CI" in
  true) echo ci ;;
esac
