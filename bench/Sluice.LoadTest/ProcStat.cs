using System.Globalization;

namespace Sluice.LoadTest;

/// <summary>A process's CPU time (user + system) and memory, from /proc, to charge each target its own cost.</summary>
internal readonly record struct ProcStat(double CpuSeconds, long RssBytes, long PeakRssBytes)
{
    private const double TicksPerSecond = 100; // USER_HZ on Linux

    public static ProcStat? Read(int? pid)
    {
        if (pid is null)
        {
            return null;
        }

        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            // Fields after the command name, which is in parentheses and may hold spaces.
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            var ticks = long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
            long rss = 0, hwm = 0;
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    rss = Kilobytes(line) * 1024;
                }
                else if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    hwm = Kilobytes(line) * 1024;
                }
            }

            return new ProcStat(ticks / TicksPerSecond, rss, hwm);
        }
        catch (IOException)
        {
            return null;
        }

        static long Kilobytes(string line) => long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }
}
