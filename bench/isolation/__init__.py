"""Each point in a fresh process: what runs in it (child), how it is started and watched (isolate), and what
the fork server imports once (preload). Below the executors, which decide where the process runs."""
