@testable import AllocBenchHarness
import AllocBenchModel
import Foundation
import XCTest

/// `allocbench fleet`: N parked processes measured at rest, and none of them left behind however
/// allocbench ends.
final class FleetTests: XCTestCase {
    static let seedTrace = TestPaths.bundledTraces + "/djb.txt"

    /// 200 bss-arena processes on the seed's trace: every one is exactly the single process (the
    /// summed RssAnon and VmPTE are 200 × its own), and none is left once the command returns.
    func testAFleetOf200CompletesAndLeavesNoProcess() throws {
        let before = Self.leanProcesses()
        let result = try runCommand(TestPaths.cli, ["fleet", "--processes", "200", "--trace", Self.seedTrace,
                                                    "--allocators", "bss-arena", "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try FleetReport.decode(Data(result.stdout.utf8))
        let fleet = try XCTUnwrap(report.results.first)
        XCTAssertEqual(fleet.status, .ok, fleet.detail ?? "")
        XCTAssertEqual(fleet.processes, 200)
        let single = try XCTUnwrap(fleet.single)
        let total = try XCTUnwrap(fleet.total)
        XCTAssertEqual(total.rssAnonKilobytes, 200 * single.rssAnonKilobytes, "each parked member holds what the single process held")
        XCTAssertEqual(total.pageTablesKilobytes, 200 * single.pageTablesKilobytes)
        XCTAssertEqual(try XCTUnwrap(fleet.ratio), 1, accuracy: 0.001)
        XCTAssertNotNil(fleet.memAvailableDropKilobytes)
        XCTAssertTrue(fleet.cgroup != nil || fleet.cgroupUnavailable != nil, "a cgroup's usage, or why there is none")
        XCTAssertTrue(Self.eventually { Self.leanProcesses().subtracting(before).isEmpty }, "a member outlived the fleet")
        XCTAssertEqual(Self.fleetCgroups(), [], "the fleet's cgroup is removed")
    }

    /// SIGTERM and SIGINT while the members are parked (and once while they are still being
    /// started): allocbench ends every member, removes its cgroup, and dies of the signal.
    func testAnInterruptedFleetLeavesNoProcess() throws {
        for (signal, children) in [(SIGTERM, 200), (SIGINT, 200), (SIGTERM, 1)] {
            try assertEndedFleetLeavesNoProcess(signal: signal, afterChildren: children)
        }
    }

    /// SIGKILL, as a crash: the members die with allocbench (PR_SET_PDEATHSIG).
    func testAFleetWhoseAllocbenchIsKilledLeavesNoProcess() throws {
        try assertEndedFleetLeavesNoProcess(signal: SIGKILL, afterChildren: 200)
    }

    func assertEndedFleetLeavesNoProcess(signal: Int32, afterChildren count: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let before = Self.leanProcesses()
        let command = try Subprocess([TestPaths.cli, "fleet", "--processes", "200", "--trace", Self.seedTrace, "--allocators", "bss-arena",
                                      "--hold", "60"],
                                     options: Subprocess.Options(environment: ProcessInfo.processInfo.environment.map { $0.key + "=" + $0.value }))
        // The first child is the single traced replay: after one, the signal may come before the fleet.
        XCTAssertTrue(Self.eventually(seconds: 60) { SignalCleanupTests.children(of: command.pid).count >= count },
                      "\(count) children started", file: file, line: line)
        let members = SignalCleanupTests.children(of: command.pid)
        XCTAssertEqual(kill(command.pid, signal), 0, file: file, line: line)
        let ended = try command.wait(timeout: .seconds(60))
        XCTAssertEqual(ended.termination, .signaled(signal), "allocbench ends by the signal it was sent: \(ended.errors)", file: file, line: line)
        XCTAssertTrue(Self.eventually { members.allSatisfy { kill($0, 0) != 0 } }, "a member outlived allocbench", file: file, line: line)
        XCTAssertTrue(Self.eventually { Self.leanProcesses().subtracting(before).isEmpty }, "a lean child outlived allocbench", file: file, line: line)
        let group = Self.fleetCgroups().filter { $0.hasSuffix("-\(command.pid)") }
        if signal == SIGKILL {
            // Left empty by an allocbench that could not remove it; the next fleet removes it.
            group.forEach { rmdir($0) }
        } else {
            XCTAssertEqual(group, [], "the fleet's cgroup is removed", file: file, line: line)
        }
    }

    /// More processes than pid_max can ever hold: refused before anything starts, exit 64.
    func testProcessesBeyondPidMaxAreRefused() throws {
        let pidMax = try XCTUnwrap(Int(String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        let before = Self.leanProcesses()
        let result = try runCommand(TestPaths.cli, ["fleet", "--processes", String(pidMax + 1), "--trace", Self.seedTrace,
                                                    "--allocators", "bss-arena"])
        XCTAssertEqual(result.status, 64, result.stderr)
        XCTAssertTrue(result.stderr.hasPrefix("allocbench: --processes \(pidMax + 1) exceeds the free process ids: pid_max \(pidMax)"), result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line")
        XCTAssertEqual(result.stdout, "")
        XCTAssertTrue(Self.leanProcesses().subtracting(before).isEmpty)
    }

    /// Memory the machine does not have: refused after the single measurement, before any fleet, exit 71.
    func testAFleetBeyondMemoryIsRefused() throws {
        XCTAssertThrowsError(try FleetLimits.checkMemory(processes: 1_000_000, perProcessKilobytes: 1024 * 1024, allocator: "x")) { error in
            let refusal = error as? FleetRefusal
            XCTAssertEqual(refusal?.kind, .system)
            XCTAssertTrue(refusal?.description.hasPrefix("not enough memory for 1000000 x processes") ?? false, "\(error)")
        }
        XCTAssertNoThrow(try FleetLimits.checkMemory(processes: 1, perProcessKilobytes: 8, allocator: "x"))
    }

    /// The lean children of this build running now (by their executable), zombies aside.
    static func leanProcesses() -> Set<pid_t> {
        let directory = URL(fileURLWithPath: TestPaths.products).resolvingSymlinksInPath().path
        var found: Set<pid_t> = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry), let exe = SystemFacts.executablePath(of: entry),
                  exe.hasPrefix(directory + "/allocbench-lean-") else { continue }
            found.insert(pid)
        }
        return found
    }

    /// The fleet cgroups that exist now.
    static func fleetCgroups() -> [String] {
        MemoryCgroup.fleetGroups()
    }

    static func eventually(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }
}
