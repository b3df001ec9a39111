zhuque: saved /dev/shm/zqdup (generation 1); run the same command again, or `zhuque resume /dev/shm/zqdup`, to continue
