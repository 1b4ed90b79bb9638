#!/bin/sh
echo overlay script
