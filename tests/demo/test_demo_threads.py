"""Torch threads for the cores other processes leave free (hvqeval.demo.threads)."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from hvqeval.demo.threads import CoreShare, threads_for


def test_one_thread_per_core_other_processes_leave_free():
    assert threads_for(0.0, cores=2, most=2) == 2  # an idle machine: every core
    assert threads_for(0.2, cores=2, most=2) == 2  # a daemon's sliver does not take a core
    assert threads_for(0.7, cores=2, most=2) == 1  # one busy process beside the demo
    assert threads_for(1.0, cores=2, most=2) == 1
    assert threads_for(5.0, cores=2, most=2) == 1  # never none
    assert threads_for(1.0, cores=8, most=8) == 7
    assert threads_for(0.0, cores=64, most=8) == 8  # never more than torch's own default


def test_a_busy_process_beside_the_demo_is_seen():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the hog has started
        share = CoreShare(most=psutil.cpu_count())
        time.sleep(1.5)  # this process waits; the hog keeps a core busy
        threads = share.threads()
    finally:
        hog.kill()
        hog.wait()
    assert share.others >= 0.5, share.others
    assert threads == threads_for(share.others, share.cores, share.most) < share.cores
