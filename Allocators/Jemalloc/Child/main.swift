import AllocBenchReplay

ReplayChild.main(CommandLine.argc, CommandLine.unsafeArgv, registeredAllocators)
