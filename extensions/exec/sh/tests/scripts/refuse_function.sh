build() {
  echo building
}
