using System.Diagnostics;

namespace Sluice.LoadTest;

/// <summary>
/// The CPU each side of a run used over the measured window, read from /proc: the process under test (alone on its
/// core), and the load side (this process and the echo backend, sharing the other core). A ratio between two targets
/// is only as good as its runs: when neither side used most of its core, the figure measures waiting, not work.
/// </summary>
internal sealed class CpuWindow
{
    /// <summary>A core used this much (percent) is taken as saturated.</summary>
    private const double Saturated = 90;

    private readonly int? _pid;
    private readonly int? _backendPid;
    private readonly ProcStat? _proxy;
    private readonly ProcStat? _self;
    private readonly ProcStat? _backend;
    private readonly long _started;

    private CpuWindow(int? pid, int? backendPid)
    {
        _pid = pid;
        _backendPid = backendPid;
        _proxy = ProcStat.Read(pid);
        _self = ProcStat.Read(Environment.ProcessId);
        _backend = ProcStat.Read(backendPid);
        _started = Stopwatch.GetTimestamp();
    }

    /// <summary>Starts the window: --pid (the process under test) and --backend-pid, either may be absent.</summary>
    public static CpuWindow Start(int? pid, int? backendPid) => new(pid, backendPid);

    public CpuShares Stop()
    {
        var seconds = Stopwatch.GetElapsedTime(_started).TotalSeconds;
        var proxy = Used(_proxy, ProcStat.Read(_pid));
        var load = Used(_self, ProcStat.Read(Environment.ProcessId)) ?? 0;
        var backend = Used(_backend, ProcStat.Read(_backendPid));
        double? proxyPercent = proxy is { } p ? Math.Round(p * 100 / seconds, 1) : null;
        var loadPercent = Math.Round(load * 100 / seconds, 1);
        double? backendPercent = backend is { } b ? Math.Round(b * 100 / seconds, 1) : null;
        var proxyBound = proxyPercent >= Saturated;
        var loadBound = loadPercent + (backendPercent ?? 0) >= Saturated;
        var bottleneck = (proxyBound, loadBound) switch
        {
            (true, true) => "both",
            (true, false) => "proxy",
            (false, true) => "load",
            _ => "none",
        };
        return new CpuShares(proxy, proxyPercent, loadPercent, backendPercent, bottleneck, bottleneck != "none");
    }

    private static double? Used(ProcStat? before, ProcStat? after) =>
        before is { } b && after is { } a ? a.CpuSeconds - b.CpuSeconds : null;
}

/// <summary>
/// CPU over a run's window: the process under test's seconds and percent of its core, the load generator's and the
/// backend's percent of theirs, which side was saturated ("proxy", "load", "both", "none"), and whether the run can be
/// trusted (one side at least was saturated).
/// </summary>
internal sealed record CpuShares(double? ProxyCpuSeconds, double? ProxyCpuPercent, double LoadCpuPercent, double? BackendCpuPercent, string Bottleneck, bool Trusted);
