namespace Sluice.Gateway.Configuration;

/// <summary>
/// The values that came from the environment (<c>env:NAME</c>): the contract says they are never logged, so any text the
/// gateway prints about the configuration (errors, the start banner, the dashboard) shows <c>env:NAME</c> instead.
/// </summary>
internal sealed class SecretValues
{
    private readonly List<(string Value, string Reference)> _values = [];

    public void Add(string value, string name)
    {
        // A very short value would mask unrelated text; such values are not secrets worth hiding anyway.
        if (value.Length >= 4)
        {
            _values.Add((value, "env:" + name));
            _values.Sort((a, b) => b.Value.Length.CompareTo(a.Value.Length));
        }
    }

    public string Conceal(string text)
    {
        foreach (var (value, reference) in _values)
        {
            text = text.Replace(value, reference, StringComparison.Ordinal);
        }

        return text;
    }
}
