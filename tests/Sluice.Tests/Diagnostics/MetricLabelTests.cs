using System.Net.WebSockets;
using Sluice.Diagnostics;

namespace Sluice.Tests.Diagnostics;

public class MetricLabelTests
{
    [Fact]
    public void CloseCodeLabel_TakesAtMost20Values_OverEveryPossibleCode()
    {
        var values = Enumerable.Range(0, ushort.MaxValue + 1)
            .Select(code => SluiceMetrics.CloseCodeTag((WebSocketCloseStatus)code))
            .Append(SluiceMetrics.CloseCodeTag(null))
            .ToHashSet();

        string[] named = [.. Enumerable.Range(1000, 16).Select(c => c.ToString(System.Globalization.CultureInfo.InvariantCulture))];
        Assert.Equal([.. named, "3xxx", "4xxx", "none", "other"], values.Order(StringComparer.Ordinal));
        Assert.Equal("1000", SluiceMetrics.CloseCodeTag(WebSocketCloseStatus.NormalClosure));
        Assert.Equal("4xxx", SluiceMetrics.CloseCodeTag((WebSocketCloseStatus)4999));
        Assert.Equal("other", SluiceMetrics.CloseCodeTag((WebSocketCloseStatus)2999));
    }
}
