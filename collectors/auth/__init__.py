"""The auth log family: sshd, sudo, su and account lines, scanned in C where built, else by regex."""
