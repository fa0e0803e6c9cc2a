cat <<EOF
body without its end
EOF2
