import AllocBenchCore
import AllocBenchGate
import AllocBenchModel
import AllocBenchReport
import ArgumentParser

// The typed values of the command line: each parses (and lists its choices in --help) through its
// cases' raw values, so the commands never carry them as strings.

extension TouchMode: ExpressibleByArgument {}
extension ThreadMode: ExpressibleByArgument {}
extension ReportFormat: ExpressibleByArgument {}
extension GateFormat: ExpressibleByArgument {}
extension FleetFormat: ExpressibleByArgument {}
