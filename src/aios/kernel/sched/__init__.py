"""The scheduler, split as Linux splits ``kernel/sched/``.

:mod:`~aios.kernel.sched.core` is the facade the kernel calls (class dispatch,
priority inheritance), :mod:`~aios.kernel.sched.fair` the EEVDF class,
:mod:`~aios.kernel.sched.deadline` the EDF/CBS class and
:mod:`~aios.kernel.sched.tree` the augmented tree the fair class picks from.
"""
