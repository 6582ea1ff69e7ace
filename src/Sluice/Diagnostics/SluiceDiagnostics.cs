namespace Sluice;

/// <summary>The names to give OpenTelemetry (or any listener) to collect Sluice's metrics and traces.</summary>
/// <example>
/// <code>
/// services.AddOpenTelemetry()
///     .WithMetrics(m => m.AddMeter(SluiceDiagnostics.MeterName))
///     .WithTracing(t => t.AddSource(SluiceDiagnostics.ActivitySourceName));
/// </code>
/// </example>
public static class SluiceDiagnostics
{
    /// <summary>The <see cref="System.Diagnostics.Metrics.Meter"/> name: <c>Sluice</c>.</summary>
    public const string MeterName = "Sluice";

    /// <summary>The <see cref="System.Diagnostics.ActivitySource"/> name: <c>Sluice</c>.</summary>
    public const string ActivitySourceName = "Sluice";
}
