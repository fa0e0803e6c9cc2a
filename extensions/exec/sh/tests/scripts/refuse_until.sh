until false; do :; done
