import AllocBenchHarness
import ArgumentParser

AllocBenchCommand.main()
