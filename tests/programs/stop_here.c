/*
 * stop_here
 *
 * A worker thread spinning in spin_here() while the main thread waits for it in
 * pthread_join: what `zhuque inspect` must show of a saved image is where each thread stopped
 * (the worker: spin_here, at its line in this file). Prints "started" once the worker runs;
 * never ends by itself.
 */
#include <pthread.h>
#include <stdio.h>

static volatile unsigned long counter;

__attribute__((noinline)) static void *spin_here(void *arg)
{
    (void)arg;
    for (;;)
        counter++; /* the worker is always here */
    return NULL;
}

int main(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, spin_here, NULL) != 0)
        return 1;
    while (counter == 0)
        ;
    printf("started\n");
    fflush(stdout);
    pthread_join(t, NULL);
    return 0;
}
