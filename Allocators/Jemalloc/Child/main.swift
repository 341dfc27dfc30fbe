import AllocBenchReplay

ReplayChild.main(registeredAllocators)
