echo start
diff <(echo a) <(echo b)
