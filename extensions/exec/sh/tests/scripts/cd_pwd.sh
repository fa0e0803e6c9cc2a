pwd
echo "PWD=$PWD"
cd src
pwd
ls
cat ../README.md
cd ..
mkdir -p a/b/c && cd a/b/c
pwd
echo here > file.txt
cd /workspace
cat a/b/c/file.txt
set +e
cd ../..
cd /tmp
cd missing
cd README.md
pwd
