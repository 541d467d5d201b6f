"""The instructor's side of grading: grade a class's notebooks, each in its own sandbox.

- :mod:`~seqcourse.autograde.batch`: ``python -m seqcourse grade`` (assemble, audit, run, judge,
  write the grade table);
- :mod:`~seqcourse.autograde.assemble`: the instructor's notebook with the student's solution cells;
- :mod:`~seqcourse.autograde.audit`: the static audit of the student's code;
- :mod:`~seqcourse.autograde.sandbox`: bubblewrap around one worker process per attempt, and its limits;
- :mod:`~seqcourse.autograde.worker`: what runs inside the sandbox;
- :mod:`~seqcourse.autograde.runtime_audit`: the audit hook and the watch on what a question forbids;
- :mod:`~seqcourse.autograde.gradescope`: Gradescope's autograder archive and its ``run_autograder``.

It talks to the student's side (:mod:`seqcourse.grading`) only through ``check()``'s recorder and
the wire format of :mod:`seqcourse.grading.wire`.
"""
