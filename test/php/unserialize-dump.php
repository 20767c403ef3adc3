<?php
/*
 * unserialize-dump.php — PHP's own unserialize() as an oracle for
 * phpsession's differential test (phpsession/differential_test.go).
 *
 * Usage:
 *
 *   printf '%s\n' "$(printf 'i:1;' | xxd -p)" | php test/php/unserialize-dump.php
 *
 * Reads one hex-encoded input per line on stdin and writes one line per
 * input on stdout: "ERR" when unserialize() fails, otherwise "OK <dump>".
 * The dump format is mirrored by phpDump() in phpsession/helpers_test.go:
 *
 *   N  b0 b1  i<int>  d<16 hex digits of the IEEE bits> dNAN  s<hex bytes>
 *   [<key>=<value>,...]           arrays; keys i<int> or s<hex>
 *   O<hex class>[<key>=<value>,...]  objects (all incomplete: see below)
 *   ~                              deeper than 6 levels (references can cycle)
 *
 * Objects are unserialized with allowed_classes=false, so no application
 * code runs and every object (and C: value, whose payload PHP then drops)
 * becomes __PHP_Incomplete_Class.
 */

declare(strict_types=1);

error_reporting(0);
ini_set('display_errors', '0');

function wsgate_dump($v, int $depth): string
{
    if ($depth > 6) {
        return '~';
    }
    if (null === $v) {
        return 'N';
    }
    if (is_bool($v)) {
        return $v ? 'b1' : 'b0';
    }
    if (is_int($v)) {
        return 'i'.$v;
    }
    if (is_float($v)) {
        return is_nan($v) ? 'dNAN' : 'd'.bin2hex(pack('E', $v));
    }
    if (is_string($v)) {
        return 's'.bin2hex($v);
    }
    $prefix = '';
    if (is_object($v)) {
        $a = (array) $v;
        $prefix = 'O'.bin2hex((string) ($a['__PHP_Incomplete_Class_Name'] ?? get_class($v)));
        unset($a['__PHP_Incomplete_Class_Name']);
        $v = $a;
    }
    $out = $prefix.'[';
    foreach ($v as $k => $x) {
        $out .= (is_int($k) ? 'i'.$k : 's'.bin2hex((string) $k)).'='.wsgate_dump($x, $depth + 1).',';
    }

    return $out.']';
}

while (false !== ($line = fgets(STDIN))) {
    $in = hex2bin(rtrim($line, "\r\n"));
    if (false === $in) {
        echo "ERR\n";
        continue;
    }
    $r = @unserialize($in, ['allowed_classes' => false, 'max_depth' => 4096]);
    if (false === $r && 'b:0;' !== substr($in, 0, 4)) {
        echo "ERR\n";
        continue;
    }
    echo 'OK ', wsgate_dump($r, 0), "\n";
}
