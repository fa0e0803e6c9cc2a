cat ~/.profile
