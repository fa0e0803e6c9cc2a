mkdir -p build/bin build/lib
touch build/bin/app build/stamp
echo data > build/lib/a.txt
cp build/lib/a.txt build/lib/b.txt
cp -r build/lib build/lib-copy
cp README.md src/main.rs build/
mv build/stamp build/STAMP
mv build/lib-copy build/moved
ls build
ls -a build/bin
ls build/moved build/STAMP
rm build/lib/b.txt
rm -r build/moved
rm -f build/does-not-exist
set +e
mkdir build
rm build/lib
cp build/lib build/x
cp -r build build/inside
mv build build/inside
rm -rf .
rm
ls build/none
echo "done: last status $?"
