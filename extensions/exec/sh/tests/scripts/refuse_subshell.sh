echo start
(cd src && ls)
