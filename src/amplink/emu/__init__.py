"""Emulated Cortex-M cores: real firmware images executed by a CPU emulator (unicorn,
Thumb/M-profile) in the core's own process, over the same device memory, MU and
interrupt lines a process core gets.

* :mod:`~amplink.emu.soc`: what the core sees (:class:`CortexMSoc`: CPU model, clock,
  memory windows, where the MU is and its NVIC line), shared with the host's platform
  driver (:mod:`amplink.remoteproc.emulated`);
* :mod:`~amplink.emu.scs`: the System Control Space (NVIC, SCB, SysTick, DWT's cycle
  counter) as registers;
* :mod:`~amplink.emu.cpu`: the CPU (:class:`CortexM`): memory mapped straight onto the
  shared region, exception entry and return, WFI, faults;
* :mod:`~amplink.emu.waker`: the thread that turns interrupt lines, SysTick and halt
  requests into the CPU's attention;
* :mod:`~amplink.emu.gdbstub`: a GDB remote-serial-protocol server;
* ``python -m amplink.emu``: the core process.
"""
